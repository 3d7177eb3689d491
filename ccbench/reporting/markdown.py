"""Escaping of text that comes from records before it goes into markdown (the leaderboard, ``ccbench
table``): a record can be crafted, so a method name or knob must not become HTML, a link, an extra
table cell or an extra row."""
from __future__ import annotations

import html
import re

# characters that would open markup in a GitHub markdown table cell: cell separator, code spans,
# emphasis, link/image brackets (``!``, ``(``, ``)``, ``#`` and ``_`` are harmless once ``[`` is escaped
# and a cell is never at a line start, so names like ``keep_ratio`` render as before)
_MARKDOWN = "|`*[]"
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def escape_cell(text) -> str:
    """``str(text)`` safe inside a markdown table cell or a line of markdown: ``\\`` and ``| ` * [ ]``
    backslash-escaped, ``& < > " '`` HTML-escaped, line breaks turned into spaces. Names that follow
    :data:`ccbench.common.names.NAME_RULE` and numbers come out unchanged.

    >>> escape_cell("keep_ratio=0.5"), escape_cell("moe-topk"), escape_cell(0.25)
    ('keep_ratio=0.5', 'moe-topk', '0.25')
    >>> escape_cell("<img src=x onerror=alert(1)>")
    '&lt;img src=x onerror=alert(1)&gt;'
    >>> print(escape_cell("a|b\\n| fake | row | 99.99 |"))
    a\\|b \\| fake \\| row \\| 99.99 \\|
    >>> print(escape_cell("[x](javascript:alert(1)) `c` *e* \\\\ & \\"q\\" 'q'"))
    \\[x\\](javascript:alert(1)) \\`c\\` \\*e\\* \\\\ &amp; &quot;q&quot; &#x27;q&#x27;
    """
    text = str(text).replace("\\", "\\\\")
    text = html.escape(text, quote=True)
    for c in _MARKDOWN:
        text = text.replace(c, "\\" + c)
    return _LINE_BREAKS.sub(" ", text)

"""Apply each one-line bug of issue 22 in memory and run the tests meant to catch it.

Every bug must turn at least one of its tests red; the script prints one line per bug and exits 1
if any bug survives. Not part of CI (it reruns test files once per bug). Run at low priority::

    nice -n 19 python scripts/seeded_bugs.py            # all bugs
    nice -n 19 python scripts/seeded_bugs.py nmi tome-pairs

Each bug is installed in a forked child's ``sys.modules`` (``scripts/mutation_score.py``): no file\non disk is changed.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REG = "tests/test_regressions.py"
PROP = "tests/test_properties.py"

# name -> (file, original text, buggy text, tests that must fail)
BUGS = {
    "nmi": ("ccbench/measurement/routing.py", '"nmi": round(nmi - chance_nmi, 6)', '"nmi": round(nmi, 6)',
            [f"{REG}::test_chance_correction_removes_the_small_sample_bias_of_nmi",
             f"{PROP}::test_chance_corrected_nmi_is_zero_on_average_for_independent_small_samples"]),
    "tome-proportional": ("baselines/tome.py", "block_attention(block, x, key_bias=size[..., 0].log())",
                          "block_attention(block, x)",
                          [f"{REG}::test_tome_merging_exact_duplicates_is_lossless_with_proportional_attention"]),
    "latency-swapped": ("ccbench/measurement/latency.py", '"speedup": round(sum(d_ms) / sum(m_ms), 4)',
                        '"speedup": round(sum(m_ms) / sum(d_ms), 4)', ["tests/test_latency.py"]),
    "latency-fns-swapped": ("ccbench/measurement/latency.py", 'fns = {"method": method, "dense": dense, "control": dense}',
                            'fns = {"method": dense, "dense": method, "control": method}', ["tests/test_latency.py"]),
    "ci-level": ("ccbench/measurement/stats.py", "    alpha = (1 - level) / 2\n    return (torch", "    alpha = (1 - level)\n    return (torch",
                 [f"{REG}::test_bootstrap_ci_width_matches_the_normal_approximation_at_its_level",
                  f"{PROP}::test_bootstrap_ci_width_is_within_ten_percent_of_the_normal_approximation"]),
    "ci-level-metric": ("ccbench/measurement/stats.py", "    alpha = (1 - level) / 2\n    return float(",
                        "    alpha = (1 - level)\n    return float(",
                        [f"{REG}::test_bootstrap_ci_width_matches_the_normal_approximation_at_its_level"]),
    "tome-pairs": ("baselines/tome.py", "pairs += ((n + 1) // 2) * (n // 2)", "pairs += (n // 2) * (n // 2)",
                   [f"{REG}::test_tome_similarity_pairs_are_a_times_b_per_merging_block",
                    "tests/test_cost.py::test_every_method_useful_vs_executed_at_batch1"]),
    "record-hash-off": ("ccbench/reporting/records.py", "    if not verify_record(record):\n        return \"id does",
                        "    if False:\n        return \"id does",
                        [f"{REG}::test_a_record_with_any_changed_field_fails_verification"]),
    "record-verify-true": ("ccbench/reporting/records.py", "return record.get(\"id\") == content_hash(body)", "return True",
                           [f"{REG}::test_a_record_with_any_changed_field_fails_verification"]),
    "exit-heads-once": ("baselines/early_exit.py", '"units/exit_head": torch.clamp(exit_block + 1, max=depth - 1)',
                        '"units/exit_head": (exit_block < depth - 1).long()',
                        [f"{REG}::test_every_exit_head_a_sample_ran_is_counted"]),
    "f1-positive-class": ("ccbench/common/text_metrics.py", "f1, acc = 100 * f1_binary(pred, label),",
                          "f1, acc = 100 * f1_binary(pred, label, positive=0),",
                          [f"{REG}::test_mrpc_f1_is_the_f1_of_the_positive_class"]),
    "calibration-leak": ("ccbench/data/image_data.py", '"train": full.subset(torch.nonzero(~calib).flatten()),',
                         '"train": full.subset(torch.arange(len(full.ids))),',
                         ["tests/test_leakage.py::test_image_task_splits_never_share_an_example"]),
}


def main(names: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "scripts"))
    from mutation_score import preload, run_mutant

    preload()
    survived = []
    for name in names or list(BUGS):
        path, old, new, tests = BUGS[name]
        text = (ROOT / path).read_text()
        if text.count(old) != 1:
            print(f"{name}: the original line is not in {path} exactly once; update the script")
            survived.append(name)
            continue
        # the bug is installed in a forked child's sys.modules; no file on disk changes
        outcome = run_mutant(path, text.replace(old, new), tests, timeout=1800)
        print(f"{name:22s} {path:28s} {'caught' if outcome != 'survived' else 'SURVIVED'}", flush=True)
        if outcome == "survived":
            survived.append(name)
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

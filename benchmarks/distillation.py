"""Sequence-level distillation on Multi30k en-de: examples/distillation/run.sh as a user runs it, then the decoding
speed of teacher and students.

    python benchmarks/distillation.py --teacher runs/multi30k-en-de/checkpoints/averaged.pt --minutes 20 --seeds 1
    ... --student-args "--decoder-layers 1" --label d256 --students distilled

The teacher translates the training sources (beam, its tuned settings), pairs below the script's MIN_PER_TOKEN are
dropped, and two students of the same shape (STUDENT_ARCH and STUDENT_ARGS of the script: small_corpus with a
one-layer decoder, 192 wide, by default) train --minutes each, on the original targets and on the teacher's, and
average their last 5 checkpoints. BLEU and chrF on test_2016_flickr (beam 4, length penalty 0.6); sentences/s of
teacher and students by benchmarks/translate_speed.py (beam 4, 2 threads, PyTorch fp32 and CTranslate2 int8, each
model in its own process, exported without a shortlist); then the aim's ratio, timed in turn in one process
(benchmarks/interleaved_speed.py, 5 rounds): the distilled student as the example deploys it (CTranslate2 int8 with
the shortlist of its training data) over the teacher in CTranslate2 int8, with both BLEU scores. Figures go to
benchmarks/results/distillation_{MINUTES}min[_{LABEL}].json, rewritten after each seed. --students picks which of
the students train (`mixed`, on the original pairs and the teacher's together, only when asked); students of another
--label train in their own folders and share the teacher's translations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from back_translation import last_training_record, machine, score

REPO = Path(__file__).resolve().parents[1]
STUDENTS = ("original", "distilled", "mixed")  # mixed: the original pairs and the teacher's together


def speed(models: dict[str, Path], data: Path, work: Path) -> dict:
    """sentences/s of each model: PyTorch fp32 and CTranslate2 int8 (benchmarks/translate_speed.py)."""
    out = work / "speed.json"
    command = [sys.executable, str(REPO / "benchmarks" / "translate_speed.py"), "--archs", "none", "--data",
               str(data), "--work", str(work / "speed"), "--contenders", "torch_fp32", "ctranslate2_int8",
               "--output", str(out), *[f"--model={name}={path}" for name, path in models.items()]]
    subprocess.run(command, check=True, cwd=REPO / "benchmarks")
    figures = json.loads(out.read_text())["models"]
    return {name: {contender: {key: figures[name][contender][key] for key in ("sentences_per_s", "bleu")}
                   for contender in ("torch_fp32", "ctranslate2_int8")} for name in models}


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    work, minutes, teacher, students = args.work, args.minutes, args.teacher.resolve(), args.students
    runs = work / (f"seed{seed}_{args.label}" if args.label else f"seed{seed}")
    env = {**os.environ, "SEED": str(seed), "MINUTES": str(minutes), "WORK": str(work), "TEACHER": str(teacher),
           "RUNS": str(runs), "VARIANTS": " ".join(students),
           **({"STUDENT_ARGS": args.student_args} if args.student_args is not None else {})}
    subprocess.run(["bash", str(REPO / "examples" / "distillation" / "run.sh")], check=True, env=env, cwd=REPO)
    kept = sum(1 for _ in (work / "text" / "distilled.de").open(encoding="utf-8"))
    result = {"seed": seed, "minutes": minutes, "teacher": score(work, runs / "teacher.test.hyp.de"),
              "distilled_pairs_kept": kept}
    for student in students:
        result[student] = {**score(work, runs / student / "test.hyp.de"), **last_training_record(runs / student)}
    ct2 = runs / "distilled" / "test.ct2-int8.hyp.de"
    if ct2.is_file():
        result["distilled"]["ctranslate2_int8"] = score(work, ct2)
    result["speed"] = speed({"teacher": teacher, **{s: runs / s / "averaged.pt" for s in students}},
                            work / "full", runs)
    if "distilled" in students:
        int8 = {who: result["speed"][who]["ctranslate2_int8"]["sentences_per_s"] for who in ("teacher", "distilled")}
        result["distilled_int8_speedup_over_teacher_int8"] = round(int8["distilled"] / int8["teacher"], 2)
        result["aim"] = aim(teacher, runs / "distilled" / "ct2-int8", work, runs)
    return result


def aim(teacher: Path, student: Path, work: Path, runs: Path) -> dict:
    """The deployed student (int8, shortlist) against the teacher in CTranslate2 int8, timed in turn."""
    teacher_ct2 = work / "teacher-ct2-int8"
    subprocess.run([sys.executable, "-m", "nmt", "export", "ctranslate2", str(teacher), str(teacher_ct2),
                    "--quantization", "int8", "--force"], check=True, cwd=REPO)
    out = runs / "in_turn.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "interleaved_speed.py"), "--model",
                    f"teacher={teacher_ct2}", "--model", f"student={student}", "--rounds", "5", "--output", str(out)],
                   check=True, cwd=REPO / "benchmarks")
    timed = json.loads(out.read_text())
    return {"sentences_per_s": timed["sentences_per_s"], "bleu": timed["bleu"], "shortlist": timed["shortlist"],
            "student_speedup": timed["ratio_over_teacher"]["student"],
            "student_bleu_below_teacher": round(timed["bleu"]["teacher"] - timed["bleu"]["student"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="The teacher checkpoint (averaged, tuned).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--minutes", type=float, default=20.0, help="Training minutes of each student.")
    parser.add_argument("--student-args", help="The students' shape (the example's STUDENT_ARGS when absent).")
    parser.add_argument("--students", nargs="+", choices=STUDENTS, default=["original", "distilled"],
                        help="Which students train: on the original targets, on the teacher's, on both together.")
    parser.add_argument("--label", default="", help="Names this student shape's results file and run folders.")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "distillation")
    args = parser.parse_args()
    suffix = f"_{args.label}" if args.label else ""
    out = REPO / "benchmarks" / "results" / f"distillation_{args.minutes:g}min{suffix}.json"
    runs = {run["seed"]: run for run in json.loads(out.read_text())["runs"]} if out.exists() else {}
    for seed in args.seeds:
        if seed in runs:
            continue
        runs[seed] = run_seed(seed, args)
        results = [runs[s] for s in sorted(runs)]
        summary = {"benchmark": "examples/distillation/run.sh: Multi30k en-de", "machine": machine(),
                   "teacher": str(args.teacher), "minutes_per_student": args.minutes,
                   "student_args": args.student_args or "the example's default STUDENT_ARGS",
                   "seeds": sorted(runs),
                   **{f"{who}_bleu_mean": round(statistics.mean(r[who]["bleu"] for r in results), 2)
                      for who in ("teacher", *args.students)},
                   "runs": results}
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(runs[seed]), flush=True)


if __name__ == "__main__":
    main()

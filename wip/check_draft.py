"""Run the draft suite on the draft reference (and two wrong versions) in this process."""
import types, sys
from pathlib import Path
import autograder.grading.points as points
points.POINTS["04_moco"] = {"momentum_update": {"values": 1.5, "edge_cases": 0.5},
                            "enqueue": {"values": 1.5, "edge_cases": 0.25, "errors": 0.25},
                            "moco_logits": {"values": 2},
                            "moco_loss": {"values": 1, "gradients": 0.5},
                            "batch_shuffle": {"values": 0.5, "randomness": 1},
                            "batch_unshuffle": {"values": 0.5}}
from autograder.grading.checks import checks_of
from autograder.grading.runner import run_checks
from autograder.grading.students import RemoteStudent
from autograder.isolation.student_process import StudentProcess
from autograder.grading.results import GradingResult
import autograder.suites.test_04_moco as suite
src = Path(__file__).with_name("04_moco_reference.py").read_text()
ref = types.ModuleType("ref"); exec(src, ref.__dict__)
def grade(source, label):
    with StudentProcess(source, call_timeout=20) as process:
        r = GradingResult(checks=run_checks(checks_of(suite), RemoteStudent(process), ref))
    print(label, r.score, "/", r.max_score)
    for c in r.checks:
        if not c.passed: print("   FAIL", c.function, c.check, c.feedback[:200], c.staff_note[-300:])
grade(src, "reference")
WRONG = """
def momentum_update(q, k, m):
    with torch.no_grad():
        for pq, pk in zip(q.parameters(), k.parameters()):
            pk.mul_(1 - m).add_(pq, alpha=m)

def batch_shuffle(x, generator=None):
    return x.clone(), torch.arange(len(x))

def moco_loss(q, k, queue, tau):
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / tau
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
"""
grade(src + WRONG, "wrong (reversed momentum, identity shuffle, loss not detached)")

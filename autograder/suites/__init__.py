"""The hidden suites: one pytest module per notebook, ``test_<notebook>.py``, and ``common.py``, what they
share (seeded inputs, the reference's value in float64, tolerances).

Each test is one graded check of one function, registered with
`autograder.grading.checks.graded` (its points are in
``grading/points.py``), comparing the student's outputs with the reference
and naming known mistakes in its hints.

May import: ``grading`` (the check helpers), ``isolation`` (errors, argument
specs), torch. Must never import ``frontends``. Only the grading core loads
these modules (by name); they are the hidden part of the kit and are never
copied next to a student's code.
"""

"""Where the hidden-test cells of releases made before the package was split import `check` from.

nbgrader keeps each hidden-test cell as it was when the assignment was
generated, so notebooks released with ``from autograder.nbgrader_hook import
check`` stay gradable; new releases import `autograder.frontends.nbgrader_hook`.
"""
from .frontends.nbgrader_hook import GradeFailed, check

__all__ = ["GradeFailed", "check"]

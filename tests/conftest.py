"""Settings for all of the kit's tests.

The tests grade the kit's own example and test submissions: trusted code. So
that `make test` passes on any machine, where no sandbox works they are graded
with the strongest isolation that does (``AUTOGRADER_ISOLATION=trusted``,
inherited by the front ends they start), as `make demo` does; where
bubblewrap works that is bubblewrap, and the hostile-submission tests, which
need it, run. Student submissions are never graded this way unless asked for.
"""
import os

os.environ.setdefault("AUTOGRADER_ISOLATION", "trusted")

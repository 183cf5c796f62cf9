"""Running untrusted code: a child process, a data-only channel to it, and the sandbox it runs in.

- ``student_process``: the grader's handle on the child (`StudentProcess`:
  start, call, time, restart after a failure); ``launch``: how a child is
  started and stopped (launch requests, resource limits, the running child);
  ``sandbox``: the launchers (bubblewrap, another user, plain) and
  `choose_launcher`; ``callbacks``: the grader's answers to the child's
  callbacks; ``specs``: arguments the child builds (MLPs, generators, images).
- ``channel``: the wire format (JSON headers and raw tensor bytes, no pickle),
  used by both sides.
- ``child.py``, ``child_server.py``, ``child_values.py``,
  ``child_substitute.py``: the child's side. They are copied flat next to the
  student's code and run as a script there, importing each other and
  ``channel`` by their bare names; nothing in the grader imports them.

May import: the standard library, torch, and this package. Must never import
``grading``, ``suites``, ``frontends`` or ``course_utils``: this layer knows
nothing of notebooks, points or references, so that it can be reviewed (and
reused) as a sandbox on its own. Everything else may import it.
"""

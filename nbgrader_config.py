"""nbgrader configuration of the kit's repository: one source (solutions/), one release (assignments/).

    nbgrader generate_assignment self_supervised --force --no-db    (or: make release)

An instructor's course (with a gradebook and safe autograding) is made by
`python -m autograder nbgrader-course DIR` instead.
"""
from autograder.frontends.nbgrader_setup import release_settings

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "ssl_kit"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
release_settings(c)

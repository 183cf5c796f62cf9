"""nbgrader configuration of the course: one source (solutions/), one release (assignments/).

    nbgrader generate_assignment self_supervised --force --no-db    (or: make release)
"""
c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "ssl_kit"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"

# What a student sees in place of a solution region.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError(\"not implemented yet: write your code here, then rerun this cell\")"
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Generated notebooks must not depend on the machine or the day.
c.ClearOutput.enabled = True

# Autograde: a slow grade cell fails after this many seconds, not the whole run.
c.ExecutePreprocessor.timeout = 300

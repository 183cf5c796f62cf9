# The kit's commands. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NOTEBOOK ?= solutions/self_supervised/03_simclr.ipynb

# What a term needs, one command a step (the instructor's guide, docs/instructors.md, says when and why).
SUBMISSIONS ?= submissions
SUBMISSION  ?=
NOTEBOOKS   ?=
WORKERS     ?= 2
COURSE      ?= course
FOLDER      ?= assignments/self_supervised
ONLY        := $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS),)

.PHONY: help venv sandbox demo test test-busy release check-release notebooks gradescope nbgrader-course grade regrade \
        submit self-check benchmark clean

help:
	@echo "Getting started"
	@echo "  make demo           set up .venv, run the SimCLR notebook (fast mode), grade the bundled example class"
	@echo "  make test           set up .venv and run the kit's tests"
	@echo "  make test-busy      the kit's tests beside one busy process per core (results must not depend on load)"
	@echo "  make sandbox        install bubblewrap, the grader's sandbox (as root, with apt-get)"
	@echo "Students"
	@echo "  make submit         check the notebooks in FOLDER (default $(FOLDER)) and write FOLDER/submission.zip"
	@echo "  make self-check     run the public checks on FOLDER's saved notebooks: a table per function, with hints"
	@echo "Instructors, in the order of a term"
	@echo "  make release        regenerate assignments/ from solutions/ (nbgrader generate_assignment)"
	@echo "  make check-release  fail if assignments/ differs from what solutions/ generates"
	@echo "  make notebooks      run every solution notebook in full mode (before a release)"
	@echo "  make gradescope     build the Gradescope autograder zip, build/autograder.zip [NOTEBOOKS=04_moco]"
	@echo "  make nbgrader-course  create an nbgrader course directory in COURSE (default $(COURSE))"
	@echo "  make grade          grade every submission in SUBMISSIONS (default $(SUBMISSIONS)/) in parallel:"
	@echo "                      build/grades.csv, build/results/, the class report build/report/ [NOTEBOOKS=, WORKERS=]"
	@echo "  make regrade        grade one submission again: SUBMISSION=path (a folder, zip or notebook)"
	@echo "  make benchmark      every benchmark of benchmarks/README.md (about 40 minutes on 2 cores): the"
	@echo "                      losses, their scale, the speed checks' margins, the notebooks' times, one"
	@echo "                      submission, a class; output in build/benchmarks/"

# The virtual environment is rebuilt whenever requirements.txt changes.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# bubblewrap, the grader's sandbox: installed with apt-get where we are root (it says so); never fails.
sandbox:
	@bash .ci/install-bubblewrap

demo: venv sandbox
	$(PY) -m course_utils.notebook_runner $(NOTEBOOK) --fast
	$(PY) -m autograder demo build/examples

test: venv sandbox
	$(PY) -m pytest

# The same tests beside one busy process per core for their whole run: no grade, figure or test may depend on load.
test-busy: venv sandbox
	$(PY) benchmarks/busy.py -- $(PY) -m pytest

release: venv
	$(PY) -m course_utils.release

check-release: venv
	$(PY) -m course_utils.release --check

notebooks: venv
	for nb in solutions/self_supervised/*.ipynb; do $(PY) -m course_utils.notebook_runner $$nb || exit 1; done

gradescope: venv
	$(PY) -m autograder gradescope-zip --out build/autograder.zip $(ONLY)

nbgrader-course: venv
	$(PY) -m autograder nbgrader-course $(COURSE)

grade: venv sandbox
	$(PY) -m autograder gradebook $(SUBMISSIONS) --csv build/grades.csv --results build/results \
		--report build/report --workers $(WORKERS) $(ONLY)

regrade: venv sandbox
	@test -n "$(SUBMISSION)" || { echo "make regrade SUBMISSION=path/to/submission (a folder, .zip or notebook)"; exit 2; }
	$(PY) -m autograder grade $(SUBMISSION) --out build/results/$(notdir $(basename $(SUBMISSION))).json $(ONLY)

submit: venv
	$(PY) -m course_utils.submit $(FOLDER) $(ONLY)

self-check: venv
	$(PY) -m course_utils.submit --check $(FOLDER) $(ONLY)

benchmark: venv
	mkdir -p build/benchmarks
	bash -o pipefail -c "$(PY) benchmarks/losses.py | tee build/benchmarks/losses.txt"
	bash -o pipefail -c "$(PY) benchmarks/scale.py --plot build/benchmarks/simclr_scale.png | tee build/benchmarks/scale.txt"
	bash -o pipefail -c "$(PY) benchmarks/speed_ratios.py | tee build/benchmarks/speed_ratios.txt"
	bash -o pipefail -c "$(PY) benchmarks/notebooks.py | tee build/benchmarks/notebooks_fast.txt"
	bash -o pipefail -c "$(PY) benchmarks/busy.py -- $(PY) benchmarks/notebooks.py | tee build/benchmarks/notebooks_fast_busy.txt"
	bash -o pipefail -c "$(PY) benchmarks/grade_one.py | tee build/benchmarks/grade_one.txt"
	bash -o pipefail -c "$(PY) benchmarks/grade_class.py --students 18 --nbgrader-students 6 | tee build/benchmarks/grade_class.txt"

clean:
	rm -rf $(VENV) data/cache .pytest_cache build

# The kit's commands. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NOTEBOOK ?= solutions/self_supervised/03_simclr.ipynb

.PHONY: help venv sandbox demo test release check-release notebooks gradescope benchmark clean

help:
	@echo "make demo           set up .venv, run the SimCLR notebook (fast mode) and print its results"
	@echo "make test           set up .venv and run the kit's tests"
	@echo "make sandbox        install bubblewrap, the grader's sandbox (as root, with apt-get)"
	@echo "make release        regenerate assignments/ from solutions/ (nbgrader generate_assignment)"
	@echo "make notebooks      run every solution notebook in full mode (before a release)"
	@echo "make gradescope     build the Gradescope autograder zip (build/autograder.zip)"
	@echo "make benchmark      time and measure grading one submission"

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

release: venv
	$(PY) -m course_utils.release

check-release: venv
	$(PY) -m course_utils.release --check

notebooks: venv
	for nb in solutions/self_supervised/*.ipynb; do $(PY) -m course_utils.notebook_runner $$nb || exit 1; done

gradescope: venv
	$(PY) -m autograder gradescope-zip --out build/autograder.zip

benchmark: venv
	$(PY) benchmarks/grade_one.py

clean:
	rm -rf $(VENV) data/cache .pytest_cache build

# The kit's commands. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NOTEBOOK ?= solutions/self_supervised/03_simclr.ipynb

.PHONY: help venv demo test release check-release notebooks gradescope benchmark clean

help:
	@echo "make demo           set up .venv, run the SimCLR notebook (fast mode) and print its results"
	@echo "make test           set up .venv and run the kit's tests"
	@echo "make release        regenerate assignments/ from solutions/ (nbgrader generate_assignment)"
	@echo "make notebooks      run every solution notebook in full mode (before a release)"
	@echo "make gradescope     build the Gradescope autograder zip (build/autograder.zip)"
	@echo "make benchmark      time and measure grading one submission"

# The virtual environment is rebuilt whenever requirements.txt changes.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m course_utils.notebook_runner $(NOTEBOOK) --fast
	$(PY) -m autograder.examples build/examples
	for ex in build/examples/*/; do $(PY) -m autograder grade $$ex --out $$ex/results.json || exit 1; done

test: venv
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

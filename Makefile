# StationManager — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install browser lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("StationManager needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its test tools

demo: $(STAMP)     ## run the app with demo data on the embedded database in .stationmanager-demo (Ctrl-C stops it)
	$(BIN)/stationmanager up --demo

browser:           ## Debian packages of the tests: chromium (Playwright's download is not used), fuse3
	@bash scripts/ensure-test-packages.sh

test: $(STAMP) browser  ## the whole suite (embedded PostgreSQL, or STATIONMANAGER_TEST_DATABASE_URL)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

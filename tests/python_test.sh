#!/usr/bin/env bash
# python_test.sh SOURCE_DIR VENV_DIR
#
# The Python package as its users get it (CTest label `python`): a virtual
# environment made with Debian's python3 (made once, kept in the build
# directory), `pip install SOURCE_DIR/python[test]` (scikit-build-core builds
# the extension with the library compiled in; pytest and the eventsourcing
# library come from PyPI), `import varve` from outside the source tree, then
# pytest over python/tests: the binding's own tests and the eventsourcing
# library's recorder, factory and application test cases run against
# eventsourcing_varve.
set -euo pipefail
src=$1
venv=$2
. "$src/tests/ci_skip.sh"
py=/usr/bin/python3
[ -x "$py" ] || varve_skip_or_fail_in_ci "no $py (bash tools/install-deps.sh installs it)"
"$py" -c 'import venv, ensurepip' 2>/dev/null ||
  varve_skip_or_fail_in_ci "Debian's python3-venv is missing (bash tools/install-deps.sh installs it)"
inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -e "$inc/Python.h" ] ||
  varve_skip_or_fail_in_ci "Debian's python3-dev is missing (bash tools/install-deps.sh installs it)"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$src/python[test]"
cd "$venv"  # not the source tree: its varve/ has no built extension
"$venv/bin/python" -c 'import varve, eventsourcing_varve; print("import varve:", varve.__file__)'
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$src/python/tests"

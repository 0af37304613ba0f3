"""srnas's version, in the bottom layer so that any module can read it without importing the
package's public face (`srnas/__init__.py` re-exports it; pyproject.toml states the same number,
tests/test_docs.py checks that they agree)."""

__version__ = "0.1.0"

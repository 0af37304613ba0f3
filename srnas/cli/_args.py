"""Argument types shared by the command modules."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def trial_number(text: str) -> int:
    """An Optuna trial number: an integer >= 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a trial number (0, 1, ...), got {text!r}")
    return value


def workers(text: str) -> int | str:
    """``auto`` or a positive integer (argparse type)."""
    return text if text == "auto" else positive_int(text)

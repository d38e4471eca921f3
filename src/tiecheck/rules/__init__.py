"""The checks a scan runs, in report order."""

from __future__ import annotations

from tiecheck.rules.base import Check, ScanContext
from tiecheck.rules.catalog import RULES, Rule
from tiecheck.rules.content import check_content
from tiecheck.rules.dtypes import check_dtypes
from tiecheck.rules.incomplete import check_empty_tensors, check_incomplete_files, check_missing_dtype
from tiecheck.rules.pickle import check_pickle, check_side_pickles
from tiecheck.rules.pruned import check_pruned
from tiecheck.rules.quantization import check_quantization
from tiecheck.rules.shapes import check_shapes
from tiecheck.rules.structure import check_duplicate_keys, check_files, check_index, check_load_issues
from tiecheck.rules.ties import check_base_model, check_ties
from tiecheck.rules.tokenizer import check_tokenizer_rows
from tiecheck.rules.wrapped import check_wrapped_names

CHECKS: tuple[Check, ...] = (
    check_files,
    check_incomplete_files,
    check_pickle,
    check_side_pickles,
    check_load_issues,
    check_index,
    check_duplicate_keys,
    check_wrapped_names,
    check_pruned,
    check_shapes,
    check_tokenizer_rows,
    check_ties,
    check_base_model,
    check_content,
    check_dtypes,
    check_missing_dtype,
    check_quantization,
    check_empty_tensors,
)

__all__ = ["CHECKS", "RULES", "Check", "Rule", "ScanContext"]

"""How many weights survive and which: prunable targets, selection groups, density schedules, top-k selection, masking."""

from lottery.sparsity.checks import SCOPES, check_amount, check_fraction, check_fractions, check_scope
from lottery.sparsity.groups import Group, groups, layer_fractions
from lottery.sparsity.masking import Masker, masked, preserves_zeros
from lottery.sparsity.schedule import DensitySchedule, Geometric, kept_count, per_round_fraction
from lottery.sparsity.selection import Survivors, select
from lottery.sparsity.targets import (
    PRUNABLE_TYPES, ZERO_KEEPING, aliases, default_prunable, match_patterns, prunable, scoring, summary,
)
from lottery.sparsity.topk import NaNScoresError, flat_nonzero, kth_largest, top_k_mask

__all__ = [
    "SCOPES", "PRUNABLE_TYPES", "NaNScoresError", "DensitySchedule", "Geometric", "Group", "Masker", "Survivors", "check_amount",
    "check_fraction", "check_fractions", "check_scope", "default_prunable", "flat_nonzero", "groups",
    "kept_count", "kth_largest", "layer_fractions", "masked", "match_patterns", "per_round_fraction",
    "preserves_zeros", "prunable", "select", "top_k_mask", "ZERO_KEEPING", "aliases", "scoring", "summary",
]

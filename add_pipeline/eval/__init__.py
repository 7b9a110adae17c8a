"""Evaluation of layer decompositions: the LayerD protocol plus per-kind figures.

* :mod:`~add_pipeline.eval.layerd`: pair metrics, occlusion grouping, DTW, merge edits;
* :mod:`~add_pipeline.eval.kinds`: background / object / shadow figures on un-grouped stacks;
* :mod:`~add_pipeline.eval.readers`: stacks from shard folders or LayerD-style folders;
* :mod:`~add_pipeline.eval.report`: dataset reports (:func:`evaluate`, :func:`evaluate_stacks`)
  and :func:`to_markdown`.
"""

from add_pipeline.eval.kinds import EvalLayer, KindScores, kind_scores
from add_pipeline.eval.layerd import PairScore, SampleResult, evaluate_sample, pair_score
from add_pipeline.eval.readers import read_folder_stacks, read_shard_stacks, read_stacks
from add_pipeline.eval.report import evaluate, evaluate_stacks, to_markdown

__all__ = [
    "EvalLayer",
    "KindScores",
    "PairScore",
    "SampleResult",
    "evaluate",
    "evaluate_sample",
    "evaluate_stacks",
    "kind_scores",
    "pair_score",
    "read_folder_stacks",
    "read_shard_stacks",
    "read_stacks",
    "to_markdown",
]

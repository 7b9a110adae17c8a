"""The ADD decompose graph (LangGraph ``StateGraph``), one run per photo.

    load -> plan -> propose -> segment -> matte -> shadow -> order -> peel (loops per object)
         -> compose -> verify -> emit
                          \\-> revise -> matte | shadow | order   (bounded retries)
    any node -> reject (END) when it sets status="rejected"
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from add_pipeline.agents import nodes
from add_pipeline.agents.context import SampleContext
from add_pipeline.agents.state import DecomposeState
from add_pipeline.agents.verify import emit, revise, revise_target, verify

LINEAR = [("load", "plan"), ("plan", "propose"), ("propose", "segment"), ("segment", "matte"),
          ("matte", "shadow"), ("shadow", "order"), ("order", "peel"), ("compose", "verify"), ("emit", END)]


def _rejected(state: DecomposeState) -> bool:
    return state.get("status") == "rejected"


def _then(nxt: str) -> Any:
    def route(state: DecomposeState) -> str:
        return END if _rejected(state) else nxt

    route.__name__ = f"then_{nxt}"
    return route


def after_peel(state: DecomposeState) -> Literal["peel", "compose", "__end__"]:
    if _rejected(state):
        return END
    return "peel" if state.get("peel_queue") else "compose"


def after_verify(state: DecomposeState) -> Literal["emit", "revise", "__end__"]:
    if _rejected(state):
        return END
    return "emit" if state["decision"]["verdict"] == "accept" else "revise"


def after_revise(state: DecomposeState) -> str:
    return END if _rejected(state) else revise_target(state)


def build_graph(checkpointer: Any = None) -> Any:
    """Compile the decompose graph; ``checkpointer`` (e.g. a SqliteSaver) keeps every step's state."""
    g: StateGraph = StateGraph(DecomposeState, context_schema=SampleContext)
    for name in ("load", "plan", "propose", "segment", "matte", "shadow", "order", "peel", "compose"):
        g.add_node(name, getattr(nodes, name))
    g.add_node("verify", verify)
    g.add_node("revise", revise)
    g.add_node("emit", emit)
    g.add_edge(START, "load")
    for src, dst in LINEAR:
        if dst == END:
            g.add_edge(src, END)
        else:
            g.add_conditional_edges(src, _then(dst), [dst, END])
    g.add_conditional_edges("peel", after_peel, ["peel", "compose", END])
    g.add_conditional_edges("verify", after_verify, ["emit", "revise", END])
    g.add_conditional_edges("revise", after_revise, ["matte", "shadow", "order", END])
    return g.compile(checkpointer=checkpointer)

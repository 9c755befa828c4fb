"""The reference side of the HTTP benchmark: one node that asks a human to approve an
item, the same graph as hitl's `approve` graph in examples/server.rs."""

from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    item: str
    approved: bool


def ask(state: State) -> dict:
    answer = interrupt({"item": state["item"]})
    return {"approved": bool(answer["approved"])}


builder = StateGraph(State)
builder.add_node("ask", ask)
builder.add_edge(START, "ask")
builder.add_edge("ask", END)
graph = builder.compile()

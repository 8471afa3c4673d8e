"""A small MCP server for trying the service out: `make run` starts it on 127.0.0.1 and allowlists it.

Built with the official SDK; serves streamable HTTP at http://127.0.0.1:<port>/mcp.
"""

from __future__ import annotations

import argparse

from mcp.server import MCPServer
from mcp_types import ToolAnnotations

demo = MCPServer(name="demo-tools", instructions="Demo tools for the MCP connectors service.")


@demo.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_weather(city: str) -> str:
    """Current weather for a city (made up, but consistent)."""
    return f"It is {10 + len(city) % 15} degrees and clear in {city}."


@demo.tool(annotations=ToolAnnotations(read_only_hint=True))
def search_docs(query: str, limit: int = 5) -> list[str]:
    """Search the demo documentation."""
    return [f"Result {i + 1} for {query!r}" for i in range(max(0, min(limit, 10)))]


@demo.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def create_ticket(title: str, body: str = "") -> str:
    """Open a support ticket."""
    return f"Created ticket {abs(hash((title, body))) % 10000}: {title}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    demo.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()

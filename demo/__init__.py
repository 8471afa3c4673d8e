"""Things for trying the service out, outside the runtime apps: `make run` starts the demo MCP server."""

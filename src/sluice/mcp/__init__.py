"""MCP in Sluice: the gateway as an MCP server at `/mcp`, and in front of upstream MCP servers (docs/mcp.md)."""

"""Enforcement points beyond the harness (DESIGN §12): the same governance in front of other tools.

``corral.integrations.mcp_proxy`` governs any MCP server's tools (``corral mcp-proxy``). Each module
imports its third-party SDK lazily, so importing this package costs nothing.
"""

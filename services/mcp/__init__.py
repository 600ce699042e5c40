"""`pearl mcp`: PeaRL as a Model Context Protocol server for coding agents (stdio, HTTP)."""

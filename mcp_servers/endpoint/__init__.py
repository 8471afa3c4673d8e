"""The organization's MCP endpoint: the governed tools, served as an MCP server (Streamable HTTP) to any MCP client.

``views`` (HTTP: authentication, DNS-rebinding checks, sessions, JSON or event-stream answers), ``exchange`` (one
request's channel back to the client), ``handlers`` (what the endpoint answers, on the SDK's server kernel, over the
services) and ``mailbox`` (a client's answer or cancellation, to the process whose request waits for it).
"""

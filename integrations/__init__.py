"""The service's clients of outside systems: the guarded outbound HTTP client, the MCP client, and OAuth.

Plain Python over the network: no ORM, no Django settings. Callers (the services) pass in what settings decide
(the outbound policy, the time and size bounds) and get plain dataclasses back, or an `IntegrationError` whose
`str()` is a sentence that is safe to show and to log.
"""

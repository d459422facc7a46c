"""The other front doors over the one request path: Anthropic Messages and OpenAI Responses, translated to chat."""

"""Real stand-ins for services we cannot run here: a SendGrid-compatible HTTP server."""

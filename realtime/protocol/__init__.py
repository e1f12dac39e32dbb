"""The wire, without I/O: client messages, server replies, frames, the upgrade gate, close codes."""

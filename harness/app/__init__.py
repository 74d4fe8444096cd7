"""The fixture app: one replica that says who served each request and keeps a cart per session."""

"""Tables and figures of the book's chapters, one module per experiment, computed from experiment artifacts."""

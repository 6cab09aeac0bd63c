"""One module per ``stellarinf`` subcommand; each exposes a click command of the same name."""

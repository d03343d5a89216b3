"""Generated protocol stubs. Never edit by hand: `SNAKEPIT_BLESS=1 cargo test -p snakepit-proto` regenerates them."""

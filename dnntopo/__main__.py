"""`python -m dnntopo` runs the command line."""
from dnntopo.cli import main

if __name__ == "__main__":
    main()

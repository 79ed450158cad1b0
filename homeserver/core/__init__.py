"""Pure building blocks shared by every layer. Imports nothing else from the package."""

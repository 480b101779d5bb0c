"""Library functions behind the commands: compose extractors and models, return results, write no files."""

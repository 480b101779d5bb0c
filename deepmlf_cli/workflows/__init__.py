"""Library functions behind the commands: compose extractors and models and return results.

predict and transcribe write no files (the command passes hooks); train, study, extract and demo
write what their library calls write (runs, datasets) and draw their bars through deepmlf_cli.render.
"""

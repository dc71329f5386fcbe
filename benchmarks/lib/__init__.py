"""What the benchmark scripts share: measuring a process, the machine, the simulator in its
own process, tap-cube's command line, the contenders of tap_vs_others.py, and the
`meltano run` pipelines into PostgreSQL of end_to_end.py, batch_messages.py and rerun.py.
"""

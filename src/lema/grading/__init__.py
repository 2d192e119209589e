"""The graders: ``answers`` reads and compares final answers, ``steps`` splits reasoning into steps,
``arith`` checks a step's arithmetic, ``grade`` is the `lema grade` command."""

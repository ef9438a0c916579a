"""The benchmarks behind BENCHMARKS.md and benchmarks/: the logic of the scripts under scripts/.

* :mod:`~crystaljax.benchmarks.machine`: machine labels and BENCHMARKS.md sections;
* :mod:`~crystaljax.benchmarks.results`: the one results file of the agent sweeps
  (lists of :class:`crystaljax.training.sweep.SweepResult`), merge and settings;
* :mod:`~crystaljax.benchmarks.agents`: the density criterion benchmark (bench_agents);
* :mod:`~crystaljax.benchmarks.table`: the baseline results table (benchmark_table);
* :mod:`~crystaljax.benchmarks.env_throughput`: env steps per second (bench_env);
* :mod:`~crystaljax.benchmarks.dft` and :mod:`~crystaljax.benchmarks.cutoffs`: the QE
  oracle's timing, validation and cutoff convergence.
"""

// kvbench's one way out: a wrong answer or a failed call ends the run (exit 1),
// so that no figure is ever reported for an engine that misbehaved.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "kvbench: %s\n", what.c_str());
  std::exit(1);
}

// What a test needs to say "this call must fail with that code".
#pragma once

#include <gtest/gtest.h>

#include <kvstore/error.hpp>
#include <kvstore/options.hpp>

namespace kvstore::test {

// Runs `fn` and returns the Errc it threw; fails the test if it threw nothing.
template <class F>
Errc code_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no kvstore::Error thrown";
  return Errc::invalid_argument;
}

// The smallest store: every test crosses grow boundaries early.
inline Options tiny() {
  Options o;
  o.initial_size = 64 * 1024;
  return o;
}

}  // namespace kvstore::test

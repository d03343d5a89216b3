raise AssertionError("a tests package is never imported by codegen")

raise AssertionError("a private module is never imported by codegen")

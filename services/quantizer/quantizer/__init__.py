"""The quantizer service: merge a passing adapter, make its variants, judge each, choose one."""

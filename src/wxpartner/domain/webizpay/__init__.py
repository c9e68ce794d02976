"""Enterprise payment (企业支付): authorization relations, quota cards and the simulated employee side."""

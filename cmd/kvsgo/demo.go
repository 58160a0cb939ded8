package main

func runDemo(env *cliEnv, args []string) error { return nil }

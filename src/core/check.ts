/** A readiness check: undefined when healthy, else what is wrong (for /readyz). */
export type Check = () => string | undefined

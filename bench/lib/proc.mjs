// /proc readings for the benchmarks: a process's RSS and CPU time, PostgreSQL's processes, the
// load average. Linux only; every reading of a process that is gone returns NaN, never throws.
import {readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'

/** Clock ticks per second of /proc/PID/stat (USER_HZ): 100 on every Linux the bench runs on. */
const TICKS_PER_SECOND = 100

/** Current and peak resident set of a process, in MiB. */
export function memory(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'))?.[1] ?? NaN)
    return {rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024}
  } catch {
    return {rssMiB: NaN, peakMiB: NaN}
  }
}

/** Fields of /proc/PID/stat after the command name (which may hold spaces); [0] is the state. */
function statFields(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return text.slice(text.lastIndexOf(')') + 2).split(' ')
}

/** User + system CPU seconds a process has used so far (utime and stime, fields 14 and 15). */
export function cpuSeconds(pid) {
  try {
    const f = statFields(pid)
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND
  } catch {
    return NaN
  }
}

/**
 * CPU seconds of a PostgreSQL server: the postmaster (first line of postmaster.pid) and every
 * process it started (its backends, the WAL writer, …). Backends that exited in between are not
 * counted, so a window's figure is a lower bound when connections come and go.
 */
export function postgresCpuSeconds(dataDir) {
  let postmaster
  try {
    postmaster = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  } catch {
    return NaN
  }
  let total = cpuSeconds(postmaster)
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (Number(statFields(entry)[1]) === postmaster) total += cpuSeconds(entry)
    } catch {
      // exited while we looked
    }
  }
  return total
}

/** The 1-minute load average and the number of CPUs, for the conditions line. */
export function loadAverage() {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0])
  } catch {
    return NaN
  }
}

/** The open-file limit of this process. */
export function fdLimit() {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))
  return Number(line?.split(/\s+/)[3])
}

/**
 * CPU use of some processes over a window: start() then stop() gives, per pid, the share of one
 * core used in between (100 = one core busy all the time).
 */
export function cpuWindow(readers) {
  const t0 = performance.now()
  const start = readers.map((read) => read())
  return () => {
    const seconds = (performance.now() - t0) / 1000
    return readers.map((read, i) => {
      const used = read() - start[i]
      return {cpuSeconds: used, percent: (100 * used) / seconds, seconds}
    })
  }
}

// A test reporter (node --test-reporter) that writes one line per skipped test: its file, its name and the skip
// reason, which says what to install to run it. test/run.mjs prints these lines at the end of the run.
export default async function * skipReporter (source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue
    const skip = event.data.skip
    if (skip === undefined || skip === false) continue
    const reason = typeof skip === 'string' ? skip : 'skipped'
    yield `${event.data.file ?? '?'}: ${event.data.name}: ${reason}\n`
  }
}

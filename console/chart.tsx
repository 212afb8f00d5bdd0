/** The throughput chart: uPlot on a canvas, redrawn every few seconds from the page's own counts. */
import { useEffect, useRef } from 'preact/hooks'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

const REDRAW_MS = 5000

export function ThroughputChart (p: { series: () => [number[], number[]], labelledBy: string }) {
  const host = useRef<HTMLDivElement>(null)
  const series = useRef(p.series)
  series.current = p.series
  useEffect(() => {
    const el = host.current
    if (el === null) return
    const width = (): number => Math.max(280, Math.min(el.clientWidth, 900))
    const plot = new uPlot({
      width: width(),
      height: 180,
      series: [
        {},
        { label: 'bytes/s', stroke: '#1f5fa8', fill: 'rgba(31, 95, 168, 0.15)', width: 2, value: (_u, v) => v === null ? '—' : `${Math.round(v)}` }
      ],
      axes: [{}, { size: 90, values: (_u, splits) => splits.map((v) => v >= 1024 * 1024 ? `${(v / 1024 / 1024).toFixed(1)} MiB/s` : v >= 1024 ? `${(v / 1024).toFixed(0)} KiB/s` : `${v} B/s`) }],
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } }
    }, series.current(), el)
    const timer = setInterval(() => { plot.setData(series.current()) }, REDRAW_MS)
    const onResize = (): void => { plot.setSize({ width: width(), height: 180 }) }
    window.addEventListener('resize', onResize)
    return () => {
      clearInterval(timer)
      window.removeEventListener('resize', onResize)
      plot.destroy()
    }
  }, [])
  return <div class="chart" ref={host} role="img" aria-labelledby={p.labelledBy} />
}

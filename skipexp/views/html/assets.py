"""The report's stylesheet and script, inlined into every report.html: nothing is fetched, nothing vendored.

The script (about 4 KB) does three things: the theme button (auto / light / dark), the chips that switch
series and table rows on and off by key, and the values under the pointer on each chart (from the JSON
that :func:`skipexp.views.html.svg.render` puts beside the SVG).
"""

CSS = """
:root{--bg:#fff;--fg:#1d2330;--muted:#5b6475;--line:#dde1e8;--panel:#f5f6f8;--link:#1b5fc1;
--ok:#2b8a3e;--bad:#c92a2a;--warn:#b35c00;
--c0:#1f77b4;--c1:#e8590c;--c2:#2b8a3e;--c3:#c2255c;--c4:#6741d9;--c5:#8c6d1f;--c6:#0b7285;--c7:#495057;
--c8:#a61e4d;--c9:#5c940d;color-scheme:light}
@media (prefers-color-scheme:dark){:root:not([data-theme=light]){--bg:#15181e;--fg:#e4e7ec;--muted:#9aa3b2;
--line:#2f3541;--panel:#1d2129;--link:#7cb3ff;--ok:#69db7c;--bad:#ff8787;--warn:#ffc078;
--c0:#5aa9e6;--c1:#ff922b;--c2:#51cf66;--c3:#f06595;--c4:#9775fa;--c5:#e0b04a;--c6:#3bc9db;--c7:#adb5bd;
--c8:#faa2c1;--c9:#a9e34b;color-scheme:dark}}
:root[data-theme=dark]{--bg:#15181e;--fg:#e4e7ec;--muted:#9aa3b2;--line:#2f3541;--panel:#1d2129;--link:#7cb3ff;
--ok:#69db7c;--bad:#ff8787;--warn:#ffc078;--c0:#5aa9e6;--c1:#ff922b;--c2:#51cf66;--c3:#f06595;--c4:#9775fa;
--c5:#e0b04a;--c6:#3bc9db;--c7:#adb5bd;--c8:#faa2c1;--c9:#a9e34b;color-scheme:dark}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:21px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;padding-bottom:4px;
border-bottom:1px solid var(--line)}
a{color:var(--link)}p{margin:6px 0}.muted{color:var(--muted)}code{font:12.5px ui-monospace,Menlo,Consolas,monospace}
header{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:baseline;justify-content:space-between}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
border:1px solid currentColor}
.completed{color:var(--ok)}.diverged,.failed,.crashed,.missing{color:var(--bad)}
.interrupted,.running,.mixed,.not-started{color:var(--warn)}.not-chosen{color:var(--muted,#777)}
button{font:inherit;color:inherit;background:var(--panel);border:1px solid var(--line);border-radius:6px;
padding:2px 9px;cursor:pointer}
.bar{position:sticky;top:0;z-index:5;background:var(--bg);border-bottom:1px solid var(--line);
padding:6px 0;margin:10px 0 0;display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center}
.chips{display:flex;flex-wrap:wrap;gap:4px;align-items:center}.chips>b{font-weight:600;margin-right:2px}
.chip{display:inline-flex;gap:5px;align-items:center;padding:1px 8px;border-radius:12px}
.chip[aria-pressed=false]{opacity:.45;text-decoration:line-through}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;background:currentColor}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:14px 18px}
figure{margin:0}figure.chart,figure.img{background:var(--panel);border:1px solid var(--line);
border-radius:8px;padding:8px 10px}
.chart-title{font-weight:600;font-size:13px;margin-bottom:2px}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px}
.plot{position:relative}.plot svg{width:100%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}svg text.label{fill:var(--fg)}
.frame{fill:var(--bg);stroke:var(--line)}.grid line,line.grid{stroke:var(--line);stroke-width:.7}
.rule{stroke:var(--muted);stroke-dasharray:2 3;stroke-width:1.2}
.guide{stroke:var(--muted);stroke-width:.8}
.line{fill:none;stroke-width:1.9;stroke-linejoin:round}.faint{fill:none;stroke-width:.9;opacity:.35}
.dash{stroke-dasharray:5 3}.band{stroke:none;opacity:.17}.dot{stroke:none}
.off{display:none !important}
"""

# a colour class per palette entry: lines and dots of a series, its band, its legend swatch
CSS += "".join(f".c{i} .line,.c{i} .faint{{stroke:var(--c{i})}}.c{i} .dot,.c{i} .band,.c{i}.sw{{fill:var(--c{i})}}"
               f".c{i}.chip .sw,.sw.c{i}{{background:var(--c{i})}}" for i in range(10))
CSS += """
.cn .line{stroke:var(--fg)}.cn .dot{fill:var(--fg)}.sw.cn{background:var(--fg)}
.legend{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:12px;margin-top:2px}
.legend .key{display:inline-flex;align-items:center;gap:4px}
.tip{position:absolute;pointer-events:none;background:var(--bg);border:1px solid var(--line);border-radius:6px;
padding:4px 7px;font-size:12px;box-shadow:0 2px 8px rgba(0,0,0,.18);white-space:nowrap;z-index:3}
.tip .sw{margin-right:4px}.tip td{padding:0 4px}.tip td.v{text-align:right;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{padding:3px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;background:var(--panel)}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
td small,th small{color:var(--muted);font-weight:normal}
.differ{background:color-mix(in srgb,var(--warn) 14%,transparent)}
.scroll{overflow-x:auto}.split{display:grid;grid-template-columns:auto minmax(0,1fr);gap:8px 28px;align-items:start}
@media (max-width:800px){.split{grid-template-columns:1fr}}.split h3{font-size:14px;margin:4px 0}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;word-break:break-word}
details{margin:8px 0}summary{cursor:pointer;color:var(--link)}
ul.links{columns:3 220px;padding-left:18px;margin:6px 0}
figure.img{margin-bottom:12px}figure.img img{max-width:100%;max-height:640px;width:auto;height:auto;display:block;
margin:0 auto;background:#fff;border-radius:4px}
footer{margin-top:30px;color:var(--muted);font-size:12px}
@media print{.bar{display:none}body{font-size:11px;background:#fff;
color:#000}:root{--bg:#fff;--fg:#000;--muted:#444;--line:#ccc;--panel:#fff}main{max-width:none;padding:0}
figure,table,tr{break-inside:avoid}.grid2{grid-template-columns:1fr 1fr}h2{break-after:avoid}
a{color:#000;text-decoration:none}.tip,.guide{display:none}}
@page{margin:14mm}
"""

JS = r"""
(function(){"use strict";
var root=document.documentElement,off=new Set(),order=["auto","light","dark"],tb=document.getElementById("theme");
function theme(t){if(t==="auto")delete root.dataset.theme;else root.dataset.theme=t;
 if(tb)tb.textContent="theme: "+t;try{localStorage.setItem("skipexp-theme",t)}catch(e){}}
var saved="auto";try{saved=localStorage.getItem("skipexp-theme")||"auto"}catch(e){}
theme(order.indexOf(saved)<0?"auto":saved);
if(tb)tb.addEventListener("click",function(){var t=root.dataset.theme||"auto";theme(order[(order.indexOf(t)+1)%3])});
function hidden(keys){for(var i=0;i<keys.length;i++)if(off.has(keys[i]))return true;return false}
function apply(){document.querySelectorAll("[data-keys]").forEach(function(el){
  var k=el.getAttribute("data-keys");el.classList.toggle("off",k!==""&&hidden(k.split(" ")))});
 document.querySelectorAll(".chip[data-key]").forEach(function(b){
  b.setAttribute("aria-pressed",off.has(b.dataset.key)?"false":"true")})}
document.querySelectorAll(".chip[data-key]").forEach(function(b){b.addEventListener("click",function(ev){
 var k=b.dataset.key;
 if(ev.shiftKey||ev.altKey){b.closest(".chips").querySelectorAll(".chip[data-key]").forEach(function(o){
  if(o.dataset.key===k)off.delete(k);else off.add(o.dataset.key)})}
 else if(off.has(k))off.delete(k);else off.add(k);apply()})});
document.querySelectorAll(".chip.all").forEach(function(b){b.addEventListener("click",function(){off.clear();apply()})});
function fmt(v,pct){if(v===null||v===undefined)return"\u2013";if(pct)return(v*100).toFixed(1)+"%";
 var a=Math.abs(v);if(a!==0&&(a<1e-3||a>=1e5))return v.toExponential(2);return String(+v.toPrecision(4))}
function esc(s){return String(s).replace(/[&<>"]/g,function(c){
 return{"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]})}
document.querySelectorAll("figure.chart").forEach(function(fig){
 var d=JSON.parse(fig.querySelector("script.chart-data").textContent),svg=fig.querySelector("svg"),
  tip=fig.querySelector(".tip"),guide=svg.querySelector(".guide");
 function t(x){return d.xlog?Math.log10(x):x}
 function px(x){return d.px0+(t(x)-t(d.x0))/(t(d.x1)-t(d.x0))*(d.px1-d.px0)}
 function hide(){tip.hidden=true;guide.setAttribute("visibility","hidden")}
 svg.addEventListener("mouseleave",hide);
 svg.addEventListener("mousemove",function(ev){
  var m=svg.getScreenCTM();if(!m)return;var pt=svg.createSVGPoint();pt.x=ev.clientX;pt.y=ev.clientY;
  var p=pt.matrixTransform(m.inverse());if(p.x<d.px0-4||p.x>d.px1+4){hide();return}
  var best=null;d.series.forEach(function(s){if(hidden(s.keys))return;
   for(var i=0;i<s.x.length;i++){if(s.x[i]===null||s.y[i]===null)continue;var dx=Math.abs(px(s.x[i])-p.x);
    if(best===null||dx<best.dx)best={dx:dx,x:s.x[i]}}});
  if(best===null||best.dx>24){hide();return}
  var rows=[];d.series.forEach(function(s){if(hidden(s.keys))return;
   for(var i=0;i<s.x.length;i++)if(s.x[i]!==null&&s.y[i]!==null&&Math.abs(px(s.x[i])-px(best.x))<0.5){
    rows.push({s:s,y:s.y[i],lo:s.lo?s.lo[i]:null,hi:s.hi?s.hi[i]:null});break}});
  rows.sort(function(a,b){return b.y-a.y});
  var head=d.cats?d.cats[Math.round(best.x)]:d.xlabel+" "+fmt(best.x);
  tip.innerHTML="<b>"+esc(head)+"</b><table>"+rows.map(function(r){
   return '<tr><td><span class="sw '+r.s.c+'"></span>'+esc(r.s.label)+'</td><td class="v">'+fmt(r.y,d.ypct)+
    (r.lo!==null&&r.hi!==null?' <span class="muted">['+fmt(r.lo,d.ypct)+" \u2013 "+fmt(r.hi,d.ypct)+"]</span>":"")+
    "</td></tr>"}).join("")+"</table>";
  tip.hidden=false;var gx=px(best.x);guide.setAttribute("x1",gx);guide.setAttribute("x2",gx);
  guide.setAttribute("visibility","visible");
  var box=svg.getBoundingClientRect(),left=ev.clientX-box.left+14;
  if(left+tip.offsetWidth>box.width)left=Math.max(0,ev.clientX-box.left-tip.offsetWidth-14);
  tip.style.left=left+"px";tip.style.top=Math.max(0,ev.clientY-box.top-tip.offsetHeight/2)+"px"})});
var closed=[];
window.addEventListener("beforeprint",function(){closed=[];document.querySelectorAll("details:not([open])")
 .forEach(function(el){closed.push(el);el.open=true})});
window.addEventListener("afterprint",function(){closed.forEach(function(el){el.open=false})});
apply()})();
"""

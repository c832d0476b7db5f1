/* Drawing matched keypoints: the query and a catalog image side by side on a
 * canvas, a line between each pair.  Pairs are [qx, qy, cx, cy] as fractions
 * of each image's width and height.
 *
 * The images are presigned storage URLs on another origin.  Drawing them
 * taints the canvas, which is fine: nothing here reads pixels back.
 */
"use strict";

const MATCH_GAP = 16; // CSS pixels between the two images

/** Load an image element; rejects with a readable message. */
function loadImage(src, what) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.decoding = "async";
    img.referrerPolicy = "no-referrer";
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`the ${what} image could not be loaded`));
    img.src = src;
  });
}

/**
 * Where each image goes for a given available width: both at one height,
 * scaled down so that the pair fits.  Returns CSS-pixel boxes.
 */
function matchLayout(left, right, maxWidth, maxHeight) {
  const ratioL = left.naturalWidth / left.naturalHeight;
  const ratioR = right.naturalWidth / right.naturalHeight;
  const height = Math.max(40, Math.min(maxHeight, (maxWidth - MATCH_GAP) / (ratioL + ratioR)));
  const wl = height * ratioL;
  const wr = height * ratioR;
  return {
    width: Math.ceil(wl + MATCH_GAP + wr),
    height: Math.ceil(height),
    left: { x: 0, y: 0, w: wl, h: height },
    right: { x: wl + MATCH_GAP, y: 0, w: wr, h: height },
  };
}

/** A distinct, readable colour for pair i (golden-angle hue steps). */
function pairColour(i, alpha) {
  return `hsla(${(i * 137.508) % 360}, 85%, 55%, ${alpha})`;
}

/** Draw the two images and the pairs on the canvas, sized for its container. */
function drawMatches(canvas, left, right, pairs, { lines = true, maxHeight = 560 } = {}) {
  const stage = canvas.parentElement;
  const style = getComputedStyle(stage);
  const width = stage.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  const plan = matchLayout(left, right, Math.max(200, width), maxHeight);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(plan.width * dpr);
  canvas.height = Math.round(plan.height * dpr);
  canvas.style.width = `${plan.width}px`;
  canvas.style.height = `${plan.height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, plan.width, plan.height);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(left, plan.left.x, plan.left.y, plan.left.w, plan.left.h);
  ctx.drawImage(right, plan.right.x, plan.right.y, plan.right.w, plan.right.h);
  const radius = Math.max(2.5, Math.min(4, plan.height / 140));
  // Many pairs make a thicket: thinner, fainter lines keep the images readable.
  const lineAlpha = pairs.length > 100 ? 0.55 : 0.85;
  const lineWidth = pairs.length > 100 ? 1 : 1.5;
  pairs.forEach(([qx, qy, cx, cy], i) => {
    const a = [plan.left.x + qx * plan.left.w, plan.left.y + qy * plan.left.h];
    const b = [plan.right.x + cx * plan.right.w, plan.right.y + cy * plan.right.h];
    if (lines) {
      ctx.strokeStyle = pairColour(i, lineAlpha);
      ctx.lineWidth = lineWidth;
      ctx.beginPath();
      ctx.moveTo(a[0], a[1]);
      ctx.lineTo(b[0], b[1]);
      ctx.stroke();
    }
    for (const [x, y] of [a, b]) {
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, Math.PI * 2);
      ctx.fillStyle = pairColour(i, 1);
      ctx.fill();
      ctx.lineWidth = 1;
      ctx.strokeStyle = "rgba(0,0,0,0.6)";
      ctx.stroke();
    }
  });
  return plan;
}

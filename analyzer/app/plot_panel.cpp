#include "plot_panel.h"

#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <QSharedPointer>
#include <QTextStream>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <cmath>

namespace decayfw::app {

PlotPanel::PlotPanel(const QString& title, const QString& x_label, const QString& y_label, QWidget* parent)
    : QWidget(parent), title_(title), plot_(new QCustomPlot(this)), hover_(new QLabel(this)) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(2, 2, 2, 2);
  auto* bar = new QHBoxLayout();
  auto* caption = new QLabel("<b>" + title.toHtmlEscaped() + "</b>", this);
  auto* save = new QPushButton(tr("Export…"), this);
  save->setToolTip(tr("Save this plot as PNG or PDF, or its data as CSV"));
  connect(save, &QPushButton::clicked, this, &PlotPanel::exportWithDialog);
  bar->addWidget(caption);
  bar->addStretch();
  bar->addWidget(hover_);
  bar->addWidget(save);
  layout->addLayout(bar);
  layout->addWidget(plot_, 1);
  plot_->xAxis->setLabel(x_label);
  plot_->yAxis->setLabel(y_label);
  plot_->setMinimumSize(220, 160);
  plot_->legend->setFont(QFont(font().family(), 8));
  connect(plot_, &QCustomPlot::mouseMove, this, &PlotPanel::onMouseMove);
  hover_->setMinimumWidth(160);
}

void PlotPanel::setSeries(const QString& name, const std::vector<double>& x, const std::vector<double>& y,
                          const QColor& color, bool scatter) {
  QCPGraph* g = nullptr;
  for (int i = 0; i < plot_->graphCount(); ++i) {
    if (plot_->graph(i)->name() == name) g = plot_->graph(i);
  }
  if (g == nullptr) {
    g = plot_->addGraph();
    g->setName(name);
  }
  g->setPen(QPen(color, 2));
  g->setLineStyle(scatter ? QCPGraph::lsNone : QCPGraph::lsLine);
  g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, color, color, scatter ? 6 : 4));
  g->setData(QVector<double>(x.begin(), x.end()), QVector<double>(y.begin(), y.end()));
  plot_->legend->setVisible(plot_->graphCount() > 1);
  plot_->rescaleAxes();
  if (plot_->yAxis->scaleType() == QCPAxis::stLinear) {
    const QCPRange yr = plot_->yAxis->range();
    plot_->yAxis->setRange(std::min(0.0, yr.lower), yr.upper + 0.05 * yr.size());  // headroom: no point on the frame
  } else {  // log scale: leave room below the smallest and above the largest positive value
    double lo = INFINITY, hi = 0;
    for (int i = 0; i < plot_->graphCount(); ++i) {
      for (auto it = plot_->graph(i)->data()->constBegin(); it != plot_->graph(i)->data()->constEnd(); ++it) {
        if (it->value > 0) {
          lo = std::min(lo, it->value);
          hi = std::max(hi, it->value);
        }
      }
    }
    if (std::isfinite(lo)) plot_->yAxis->setRange(lo / 2, hi * 2);
  }
  const QCPRange xr = plot_->xAxis->range();
  plot_->xAxis->setRange(xr.lower - 0.02 * xr.size(), xr.upper + 0.02 * xr.size());  // points not on the frame
  plot_->replot();
}

void PlotPanel::keepOnlySeries(const QString& name) {
  for (int i = plot_->graphCount() - 1; i >= 0; --i) {
    if (plot_->graph(i)->name() != name) plot_->removeGraph(i);
  }
  plot_->legend->setVisible(plot_->graphCount() > 1);
  plot_->replot();
}

void PlotPanel::clearSeries() {
  plot_->clearGraphs();
  plot_->replot();
}

void PlotPanel::setHeatMap(const std::vector<float>& values, int rows, int cols, const QString& value_label,
                           bool log_scale, double lo, double hi) {
  heat_ = values;
  rows_ = rows;
  cols_ = cols;
  if (map_ == nullptr) {
    map_ = new QCPColorMap(plot_->xAxis, plot_->yAxis);
    scale_ = new QCPColorScale(plot_);
    plot_->plotLayout()->addElement(0, 1, scale_);
    scale_->setType(QCPAxis::atRight);
    map_->setColorScale(scale_);
    map_->setGradient(QCPColorGradient::gpThermal);
    map_->setInterpolate(false);
    plot_->yAxis->setRangeReversed(true);  // row 0 at the top, like a matrix
  }
  scale_->axis()->setLabel(value_label);
  scale_->setDataScaleType(log_scale ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
  map_->data()->setSize(cols, rows);
  map_->data()->setRange(QCPRange(0, std::max(1, cols - 1)), QCPRange(0, std::max(1, rows - 1)));
  double mn = INFINITY, mx = -INFINITY;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      double v = values[static_cast<size_t>(r * cols + c)];
      if (log_scale && !(v > 0 && std::isfinite(v))) v = std::nan("");
      map_->data()->setCell(c, r, v);
      if (std::isfinite(v)) {
        mn = std::min(mn, v);
        mx = std::max(mx, v);
      }
    }
  }
  if (hi > lo) {
    map_->setDataRange(QCPRange(lo, hi));
  } else if (std::isfinite(mn)) {
    map_->setDataRange(QCPRange(mn, mx > mn ? mx : mn + (log_scale ? mn : 1e-9)));
  }
  plot_->rescaleAxes();
  plot_->xAxis->setRange(-0.5, cols - 0.5);
  plot_->yAxis->setRange(-0.5, rows - 0.5);
  plot_->replot();
}

static void set_ticks(QCPAxis* axis, const std::vector<std::string>& labels) {
  if (labels.empty()) {
    axis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    return;
  }
  QSharedPointer<QCPAxisTickerText> t(new QCPAxisTickerText);
  const size_t step = std::max<size_t>(1, labels.size() / 24);  // keep labels readable
  for (size_t i = 0; i < labels.size(); i += step) t->addTick(static_cast<double>(i), QString::fromStdString(labels[i]));
  axis->setTicker(t);
  axis->setTickLabelRotation(axis->orientation() == Qt::Horizontal ? 60 : 0);
}

void PlotPanel::setXTickLabels(const std::vector<std::string>& labels) {
  xlabels_ = labels;
  set_ticks(plot_->xAxis, labels);
  plot_->replot();
}

void PlotPanel::setYTickLabels(const std::vector<std::string>& labels) {
  ylabels_ = labels;
  set_ticks(plot_->yAxis, labels);
  plot_->replot();
}

void PlotPanel::setLogY(bool log) {
  plot_->yAxis->setScaleType(log ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
  if (log) plot_->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
  plot_->replot();
}

QString PlotPanel::csv() const {
  QString out;
  QTextStream s(&out);
  if (map_ != nullptr && rows_ > 0) {
    s << "row,column,value\n";
    for (int r = 0; r < rows_; ++r) {
      for (int c = 0; c < cols_; ++c) s << r << "," << c << "," << heat_[static_cast<size_t>(r * cols_ + c)] << "\n";
    }
    return out;
  }
  s << "series," << plot_->xAxis->label() << "," << plot_->yAxis->label() << "\n";
  for (int i = 0; i < plot_->graphCount(); ++i) {
    const auto* g = plot_->graph(i);
    for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it) {
      s << g->name() << "," << it->key << "," << it->value << "\n";
    }
  }
  return out;
}

bool PlotPanel::exportTo(const QString& path) {
  const QString ext = QFileInfo(path).suffix().toLower();
  if (ext == "png") return plot_->savePng(path, 0, 0, 2.0);
  if (ext == "pdf") return plot_->savePdf(path);
  if (ext == "csv") {
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Text)) return false;
    f.write(csv().toUtf8());
    return true;
  }
  return false;
}

void PlotPanel::exportWithDialog() {
  const QString path = QFileDialog::getSaveFileName(this, tr("Export %1").arg(title_), title_ + ".png",
                                                    tr("PNG image (*.png);;PDF (*.pdf);;CSV data (*.csv)"));
  if (path.isEmpty()) return;
  if (!exportTo(path)) QMessageBox::warning(this, tr("Export"), tr("Could not write %1").arg(path));
}

QString PlotPanel::valueAt(double x, double y) const {
  if (map_ != nullptr && rows_ > 0) {
    const int c = static_cast<int>(std::lround(x)), r = static_cast<int>(std::lround(y));
    if (r < 0 || r >= rows_ || c < 0 || c >= cols_) return "";
    QString where = QString("row %1, col %2").arg(r).arg(c);
    if (r < static_cast<int>(ylabels_.size())) where = QString::fromStdString(ylabels_[r]) + " ×";
    if (c < static_cast<int>(xlabels_.size())) where += " " + QString::fromStdString(xlabels_[c]);
    return where + QString(": %1").arg(heat_[static_cast<size_t>(r * cols_ + c)], 0, 'g', 4);
  }
  return QString("x %1, y %2").arg(x, 0, 'g', 4).arg(y, 0, 'g', 4);
}

double PlotPanel::heatValue(int row, int col) const {
  return map_ != nullptr ? map_->data()->cell(col, row) : std::nan("");
}

int PlotPanel::seriesCount() const { return plot_->graphCount(); }

int PlotPanel::pointCount(const QString& series) const {
  for (int i = 0; i < plot_->graphCount(); ++i) {
    if (plot_->graph(i)->name() == series) return plot_->graph(i)->dataCount();
  }
  return 0;
}

void PlotPanel::onMouseMove(QMouseEvent* e) {
  const double x = plot_->xAxis->pixelToCoord(e->position().x());
  const double y = plot_->yAxis->pixelToCoord(e->position().y());
  const QString v = valueAt(x, y);
  hover_->setText(v);
  plot_->setToolTip(v);
}

}  // namespace decayfw::app
